"""GPT-2 architecture: random weights written to GGUF, kvforge's logits
against Hugging Face GPT2LMHeadModel with the same weights.

Tolerances: with f32 weights and an f32 KV cache both engines do the same f32
math in a different summation order: |diff| <= 2e-5 (logits here span about
+-1.5; f32 rounding through 3 layers of width 64 gives ~1e-6, measured 7e-7,
while any real bug moves them by 1e-2 or more). With f16 weights HF gets the
same f16-rounded weights, and our default f16 KV cache rounds K/V to 11 bits
(relative 2^-11 ~ 5e-4 per element): |diff| <= 2e-3 (measured 2e-4). BF16
weights likewise (HF gets the same bf16-rounded weights; on AVX2 they run the
x8-packed BF16 kernel). On a CPU with AVX512_BF16 kvforge also rounds the
activations of every BF16 matmul to bf16 (8 significant bits, at most 2^-8 of
each value; vdpbf16ps), which HF does not: |diff| <= 1e-2 there (measured
5.4e-3 on the first such CPU, AMD Zen 5)."""
import json
import subprocess

import numpy as np
import pytest

from conftest import run_kvforge
from gguf_fixtures import random_gpt2, write_gpt2_gguf
from reference_models import kvforge_logits

IDS = [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 10, 256, 3, 200, 255, 0, 17] * 3


@pytest.fixture(scope="module")
def hf_gpt2():
    return random_gpt2()


def _hf_logits(model, ids):
    import torch
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


@pytest.mark.parametrize("dtype,kv,tol", [(np.float32, "f32", 2e-5), (np.float16, "f16", 2e-3), ("bf16", "f16", 2e-3)],
                         ids=["f32", "f16", "bf16"])
def test_gpt2_logits_match_transformers(kvforge_bin, hf_gpt2, tmp_path, dtype, kv, tol):
    import torch
    path = tmp_path / "gpt2.gguf"
    write_gpt2_gguf(path, hf_gpt2, dtype)
    ref_model = hf_gpt2
    if dtype != np.float32:  # the reference sees the same rounded weights
        ref_model = random_gpt2()
        with torch.no_grad():
            for name, p in ref_model.named_parameters():
                if p.dim() == 2:
                    p.copy_(p.half().float() if dtype == np.float16 else p.bfloat16().float())
    ref = _hf_logits(ref_model, IDS)
    ours = kvforge_logits(kvforge_bin, path, IDS, tmp_path, "--kv-type", kv)
    if dtype == "bf16" and "avx512bf16: yes" in subprocess.run([str(kvforge_bin), "sysinfo"], capture_output=True,
                                                                 text=True).stdout:
        tol = 1e-2  # the activations rounded to bf16 as well (see above)
    diff = np.abs(ref - ours)
    print(f"\n[gpt2 {dtype if dtype == 'bf16' else np.dtype(dtype).name}] max|diff|={diff.max():.2e} logit range={np.abs(ref).max():.1f}")
    assert np.abs(ref).max() > 1.0  # the comparison is not trivially between near-zero numbers
    assert diff.max() <= tol
    assert np.array_equal(ref.argmax(-1), ours.argmax(-1))


def test_gpt2_cached_equals_uncached(kvforge_bin, hf_gpt2, tmp_path):
    path = tmp_path / "gpt2.gguf"
    write_gpt2_gguf(path, hf_gpt2, np.float16)
    runs = []
    for extra in ([], ["--no-cache"]):
        out = tmp_path / "run.json"
        run_kvforge(kvforge_bin, "run", "-m", path, "-p", "Hello, world", "-n", 100, "--temp", "0",
                    "--ignore-eos", "--json-out", out, *extra)
        runs.append(json.loads(out.read_text())["tokens"])
    assert len(runs[0]) == 100
    assert runs[0] == runs[1]


def test_gpt2_context_beyond_learned_positions_is_an_error(kvforge_bin, hf_gpt2, tmp_path):
    path = tmp_path / "gpt2.gguf"
    write_gpt2_gguf(path, hf_gpt2, np.float32)
    r = run_kvforge(kvforge_bin, "run", "-m", path, "-p", "hi", "-c", "4096", check=False)
    assert r.returncode == 1
    assert r.stderr.strip().startswith("error:") and "learned positions" in r.stderr
