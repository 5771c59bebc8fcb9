"""The KV cache is exact by design: generating with the cache gives the same
tokens as recomputing the whole sequence at every step, and logits do not
depend on how the prompt is split into batches or across threads."""
import json

import numpy as np
import pytest

from conftest import run_kvforge
from reference_models import kvforge_logits, kvforge_tokenize

PROMPTS = [
    "The history of the printing press begins",
    "<|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "def quicksort(arr):",
]
N_NEW = 256


def _greedy(kvforge_bin, model, prompt, tmp_path, *extra):
    out = tmp_path / "run.json"
    run_kvforge(kvforge_bin, "run", "-m", model, "-p", prompt, "-n", N_NEW, "--temp", "0", "--ignore-eos",
                "--json-out", out, *extra, timeout=1800)
    return json.loads(out.read_text())


@pytest.mark.parametrize("prompt", PROMPTS)
def test_cached_equals_uncached_greedy(kvforge_bin, smollm2_gguf, tmp_path, prompt):
    cached = _greedy(kvforge_bin, smollm2_gguf, prompt, tmp_path)
    uncached = _greedy(kvforge_bin, smollm2_gguf, prompt, tmp_path, "--no-cache")
    assert len(cached["tokens"]) == N_NEW
    assert cached["prompt_tokens"] == uncached["prompt_tokens"]
    assert cached["tokens"] == uncached["tokens"]


def test_logits_independent_of_batch_split_and_threads(kvforge_bin, smollm2_gguf, tmp_path):
    ids = kvforge_tokenize(kvforge_bin, smollm2_gguf, "A quick brown fox jumps over the lazy dog. " * 6)
    base = kvforge_logits(kvforge_bin, smollm2_gguf, ids, tmp_path)
    for extra in (["-b", "1"], ["-b", "7"], ["-b", "33", "-t", "1"], ["-t", "3"]):
        other = kvforge_logits(kvforge_bin, smollm2_gguf, ids, tmp_path, *extra)
        assert np.array_equal(base, other), f"logits differ with {extra}"


@pytest.mark.parametrize("batch", ["256", "1"])
def test_avx2_kernels_give_the_avx512_bits(kvforge_bin, smollm2_gguf, tmp_path, batch):
    # `kvforge --simd avx2` caps the kernels at AVX2: on an AVX-512 CPU the
    # AVX-512 matmul and attention kernels must give the AVX2 ones' bits
    # (prefill tiles with -b 256, single-token tiles with -b 1). On an
    # AVX2-only CPU both runs take the AVX2 kernels.
    ids = kvforge_tokenize(kvforge_bin, smollm2_gguf, "The printing press was invented around 1440. " * 8)
    best = kvforge_logits(kvforge_bin, smollm2_gguf, ids, tmp_path, "-b", batch)
    avx2 = kvforge_logits(kvforge_bin, smollm2_gguf, ids, tmp_path, "-b", batch, global_args=("--simd", "avx2"))
    assert np.array_equal(best, avx2)


def test_f32_cache_is_close_to_f16_cache(kvforge_bin, smollm2_gguf, tmp_path):
    text = ("The quick brown fox jumps over the lazy dog. Paris is the capital and most populous city of "
            "France. The printing press was invented by Johannes Gutenberg around 1440. ") * 3
    ids = kvforge_tokenize(kvforge_bin, smollm2_gguf, text)
    f16 = kvforge_logits(kvforge_bin, smollm2_gguf, ids, tmp_path)
    f32 = kvforge_logits(kvforge_bin, smollm2_gguf, ids, tmp_path, "--kv-type", "f32")
    # f16 storage rounds K/V to 11 significant bits. Any perturbation also flips
    # some 8-bit activation roundings downstream, so through 30 layers the
    # logits move about as much as between two quantized engines (measured
    # over 109 positions: max ~2.1; llama.cpp vs kvforge: max up to ~1.8,
    # mean ~0.15-0.23). It must move them (otherwise the flag does nothing)
    # but stay in that band.
    diff = np.abs(f16 - f32)
    print(f"\nf16 vs f32 cache: max|diff|={diff.max():.3f} mean|diff|={diff.mean():.4f}")
    assert 0 < diff.max() < 3.0
    assert diff.mean() < 0.4  # measured 0.24
    # Over ~100 positions the top-1 token flips only at near-ties.
    assert np.mean(f16.argmax(-1) == f32.argmax(-1)) >= 0.85
